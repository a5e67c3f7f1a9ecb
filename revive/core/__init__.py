"""Small pieces every stage and mechanism uses: errors, subprocesses, waits."""
