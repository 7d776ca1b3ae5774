"""Hub stage: the Hub client, the listing record, checkpoint sources and epoch selection, fetching a
checkpoint by identity within a disk budget, HTTP archives and their safe extraction."""
