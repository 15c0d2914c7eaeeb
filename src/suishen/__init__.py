"""Suishen city code service.

Import layout: the repository keeps its components in top-level folders (``app/``,
``codecs/``, ``keys/``, ``verifiers/``, ``sdk/``) as the product spec lays them out. A
top-level import package called ``codecs`` would shadow Python's standard ``codecs``
module, so every folder is imported as a subpackage of one package, ``suishen``:
``src/suishen/<folder>`` is a symbolic link to ``<folder>/``.

Dependencies point one way: ``app -> sdk -> verifiers -> keys -> codecs``; the core
(``codecs``, ``keys``, ``verifiers``) is synchronous and does no I/O.
"""

__version__ = "0.1.0"
