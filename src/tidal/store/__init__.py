"""Storage: write-ahead log, memtable, Parquet segments, manifest, snapshots."""
