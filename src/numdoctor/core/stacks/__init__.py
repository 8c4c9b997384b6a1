"""Stacks of every thread of a process: the model, the parsers of each tool's output, and
the dump ladder that decides which tool to ask."""
