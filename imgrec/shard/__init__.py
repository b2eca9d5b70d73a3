"""Beyond one machine (optional extra ``imgrec[ray]``): a Ray session, sharded indexes and
exact search over one Ray actor per shard."""
