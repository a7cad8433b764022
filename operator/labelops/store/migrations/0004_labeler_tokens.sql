-- Labelers' bearer tokens as SHA-256 digests (never the tokens themselves), written by the
-- operator from the campaign's tokens Secret whenever that Secret changes, and re-read by
-- every worker process every few seconds: a changed or removed token takes effect without
-- a restart, and no worker pod holds a plaintext token (store/labeler_tokens.py).
CREATE TABLE labeler_tokens (
    labeler text PRIMARY KEY CHECK (labeler <> ''),
    token_sha256 bytea NOT NULL UNIQUE CHECK (octet_length(token_sha256) = 32)
);

-- Moves with every change of labeler_tokens, so a worker reads the digests only when they
-- changed (one row, one index lookup per poll).
CREATE TABLE labeler_tokens_revision (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    revision bigint NOT NULL
);
INSERT INTO labeler_tokens_revision (revision) VALUES (0);
