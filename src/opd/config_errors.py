"""The config check's error, and how it names a key (``config.models.student.toy.steps``)."""


class ConfigError(ValueError):
    pass


def key(path) -> str:
    return ".".join(["config", *map(str, path)])
