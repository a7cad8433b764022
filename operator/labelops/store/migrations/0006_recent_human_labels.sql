-- A LabelerPool's status reads each member campaign's human labels of the last window
-- (store/pool_usage.py: their decayed sum, and the labelers who gave them) on every pass.
-- Without an index that is a scan of all the campaign's labels (220 ms at a million labels
-- here); with this one, a range scan of the window's rows (0.13 ms). Partial on
-- origin = 'human', the only labels the pool counts, so machine labels add no entry.
--
-- Active leases (store/active_leases.py, the worker's /metrics) need no new index: the
-- partial leases_reserved_by_expiry (0001) holds only reserved leases, keyed by expiry.
--
-- Built in the migration's transaction (CREATE INDEX CONCURRENTLY cannot run inside one),
-- so submissions to this campaign wait while it builds (1.4 s for a million labels here).
CREATE INDEX labels_human_by_created_at ON labels (created_at) INCLUDE (labeler)
    WHERE origin = 'human';
