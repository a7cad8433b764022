-- Services' bearer tokens as SHA-256 digests, like the labelers' (0004): today the one
-- service is a LabelerPool's router ("router"), which calls the worker on behalf of the
-- labeler it names in the Labelops-Labeler header. Written by the operator from the pool's
-- router Secret, re-read by the workers with the labelers' digests: changing one moves
-- labeler_tokens_revision too (store/labeler_tokens.py), and a digest is never both a
-- labeler's and a service's (refused by the writers, which hold the revision row's lock).
CREATE TABLE service_tokens (
    service text PRIMARY KEY CHECK (service <> ''),
    token_sha256 bytea NOT NULL UNIQUE CHECK (octet_length(token_sha256) = 32)
);
