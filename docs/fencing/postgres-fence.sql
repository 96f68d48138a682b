-- Fencing for a database of your own: a table keeping the highest fencing token each
-- resource has seen, and a function that claims a resource for a token in the caller's
-- transaction, refusing a token lower than one that already wrote. Run it once.
CREATE TABLE IF NOT EXISTS fence (
  resource text PRIMARY KEY,
  token    bigint NOT NULL
);

CREATE OR REPLACE FUNCTION fence(resource_name text, writer_token bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  -- The row lock this takes serialises writers of one resource until commit.
  INSERT INTO fence (resource, token) VALUES (resource_name, writer_token)
  ON CONFLICT (resource) DO UPDATE SET token = EXCLUDED.token WHERE fence.token <= EXCLUDED.token;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'fenced: token % is older than the last writer''s of %', writer_token, resource_name
      USING ERRCODE = 'HL001';
  END IF;
END
$$;
