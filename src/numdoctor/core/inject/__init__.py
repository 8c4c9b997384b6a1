"""The directory numdoctor puts first on a supervised program's PYTHONPATH: its
`sitecustomize` arms every Python process of the tree (see the module's own comment)."""
