"""A task file without a build function."""


def make(hp):
    return None
