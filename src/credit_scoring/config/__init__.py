"""The typed schema of every ``conf/`` section, the loader, and the start-up checks.

``sections.SECTIONS`` maps each top-level parameter key to its model. The declarations that
training and serving share (the data contract, processing, serving) live in ``core`` and are
listed there too; everything else (ingestion, data science, monitoring, synthetic data) is
defined here. Nothing in this package imports a training library.
"""
