"""Who waits for whom in a process tree: the facts (model), and their collection from /proc."""
