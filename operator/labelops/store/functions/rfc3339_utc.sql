
-- RFC 3339 in UTC, the way the worker writes times (labelops.worker.wire.timestamp):
-- microseconds only when there are any, and a Z.
-- STABLE, not IMMUTABLE: to_char reads settings.
CREATE OR REPLACE FUNCTION rfc3339_utc(p_moment timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT to_char(p_moment AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN extract(microseconds FROM p_moment)::bigint % 1000000 = 0 THEN ''
                ELSE to_char(p_moment AT TIME ZONE 'UTC', '.US') END
        || 'Z'
$$;
