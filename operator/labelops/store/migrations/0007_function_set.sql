-- What the last migrate() left of functions/ (store/migrations.py): a digest of the files it
-- applied, and one of the catalog rows they left (pg_proc's row versions, which any
-- CREATE OR REPLACE, DROP, GRANT or REVOKE of a function of the schema changes). A migrate()
-- that finds both, and the migrations, as this code would leave them has nothing to apply
-- and takes no lock: a resync pass of the operator reads one row instead of re-creating
-- every function. One row.
CREATE TABLE function_set (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    files_digest text NOT NULL,
    catalog_digest text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
