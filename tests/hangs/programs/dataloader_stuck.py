"""torch DataLoader with two workers; one sample's __getitem__ never returns."""
import threading

import torch
from torch.utils.data import DataLoader, Dataset


class Images(Dataset):
    def __init__(self):
        self.remote_ready = threading.Event()

    def __len__(self):
        return 16

    def __getitem__(self, index):
        if index == 5:
            self.remote_ready.wait()  # expect: root
        return torch.full((3,), float(index))


if __name__ == "__main__":
    loader = DataLoader(Images(), batch_size=2, num_workers=2)
    print("READY", flush=True)
    for batch in loader:  # expect: loop
        print(batch.shape, flush=True)
