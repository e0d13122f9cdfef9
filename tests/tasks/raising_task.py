"""A task whose build raises."""


def build(hp):
    sizes = {"small": 8}
    return sizes[hp.get("size", "huge")]
