"""What every benchmark shares: measuring a child, the /dev/shm workspace, rounds, reports."""
