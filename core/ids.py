"""What an id in the store can be: ids are BIGINT, so a larger number names nothing.

Free of imports, so the command line's argument checks can use it without loading the store."""

LARGEST_ID = 2 ** 63 - 1
