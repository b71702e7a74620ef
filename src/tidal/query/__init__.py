"""Reading the store: timelines, sequence-ordered reads, and SQL."""
