"""Builds on a Dask cluster (issue 11). No doit in here.

- ``store``: a content-addressed object store on any fsspec URL, the bundle
  manifest (everything a revive needs, by sha256), build sources as a
  deterministic tarball, and each worker's size-bounded, verified cache.
- ``resources``: the Dask resource names a worker offers and a build needs.
- ``remote``: the function a worker runs for one build.
- ``submit``: the submitting side, called by the build stage with [cluster].
- ``worker``: ``python -m revive.cluster.worker`` starts a worker for revive.
"""
