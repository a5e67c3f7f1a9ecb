"""A build's inputs fetched on the host ([sources.NAME]): tarballs by URL and
sha256, the lock file that pins Debian source packages. No doit here."""
