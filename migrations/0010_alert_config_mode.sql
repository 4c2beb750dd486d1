-- Alert destinations belong to a mode, like accounts and alerts: a test-mode
-- key must neither read nor change where live alerts (which name live
-- accounts) are sent. Existing destinations received live alerts, so they
-- stay live; a test-mode pool sets its own.
ALTER TABLE alert_config ADD COLUMN mode text NOT NULL DEFAULT 'live' CHECK (mode IN ('live', 'test'));
ALTER TABLE alert_config ALTER COLUMN mode DROP DEFAULT;
ALTER TABLE alert_config DROP CONSTRAINT alert_config_pkey;
ALTER TABLE alert_config ADD PRIMARY KEY (tenant_id, mode);
