-- What each index of `events` costs an insert (issue 20, README "Ingest"): 200,000 lookup-shaped
-- rows into a table with the same columns and indexes, with and without the kind and patient
-- indexes, alternating. Run against a throwaway cluster:
--   scripts/with-pg.sh bash -c 'psql "$DATABASE_URL" -f bench/index-cost.sql'
\timing off
DROP TABLE IF EXISTS src, t;
DROP FUNCTION IF EXISTS run(boolean, boolean);
CREATE TABLE src AS
SELECT gen_random_uuid() AS event_id,
       '13' || lpad((i % 3000)::text, 8, '0') AS site_code,
       ('00000000-0000-7000-8000-' || lpad(to_hex(i % 3000), 12, '0'))::uuid AS stream_id,
       i::bigint AS sequence, 'T01'::text AS terminal_id,
       now() - (i % 86400) * interval '1 second' AS occurred_at, now() AS received_at,
       'lookup'::text AS kind,
       jsonb_build_object('outcome','valid','route','insurance_card','patient_ref', md5(i::text) || md5((i+1)::text),
                          'staff_id','S1','latency_ms',120,'source','counter') AS body,
       NULL::bytea AS chain_hash
FROM generate_series(1, 200000) i;
CREATE OR REPLACE FUNCTION run(with_kind boolean, with_patient boolean) RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; t1 timestamptz;
BEGIN
  DROP TABLE IF EXISTS t;
  CREATE TABLE t (LIKE src);
  ALTER TABLE t ADD PRIMARY KEY (event_id, occurred_at);
  CREATE INDEX ON t (site_code, occurred_at DESC);
  IF with_kind THEN CREATE INDEX ON t (kind, occurred_at DESC); END IF;
  CREATE INDEX ON t (site_code, stream_id, sequence);
  IF with_patient THEN CREATE INDEX ON t ((body->>'patient_ref'), occurred_at DESC); END IF;
  CREATE INDEX ON t (occurred_at DESC);
  t0 := clock_timestamp();
  INSERT INTO t SELECT * FROM src;
  t1 := clock_timestamp();
  RETURN extract(epoch FROM t1 - t0);
END $$;
SELECT 'all6' AS variant, run(true, true) UNION ALL
SELECT 'no_kind', run(false, true) UNION ALL
SELECT 'all6', run(true, true) UNION ALL
SELECT 'no_kind', run(false, true) UNION ALL
SELECT 'no_kind_no_patient', run(false, false) UNION ALL
SELECT 'all6', run(true, true) UNION ALL
SELECT 'no_kind', run(false, true) UNION ALL
SELECT 'no_kind_no_patient', run(false, false);
DROP TABLE t, src;
DROP FUNCTION run(boolean, boolean);
