"""revive: build inside a throwaway VM revived from a memory snapshot.

The mechanism (config, guest kinds, the QEMU machine, channels, media
writers, the cluster) lives here and never imports doit; the doit task
definitions are the clone's ``tasks/`` (installed as ``revive.tasks``).
"""
