-- A second upstream: accounts are LTX Studio cookie jars or LTX-2 API keys.
-- An API-key account keeps its sealed key in the cookie column (the
-- account's credential, sealed with its own associated data) and its name
-- in the email column, which is the account's identity in every route;
-- names never contain "@", so they cannot meet an email. API keys have no
-- token expiry, so the refresher and the alert cron, which read the expiry
-- columns, pass them by.
ALTER TABLE accounts ADD COLUMN provider text NOT NULL DEFAULT 'ltxstudio';

-- A job may ask for one provider; NULL lets any provider whose contract
-- fits the job's params run it. resubmit_unknown says whether an attempt
-- whose outcome nobody can know (a synchronous upstream call lost with its
-- replica) may be submitted again, at the risk of running twice.
ALTER TABLE jobs ADD COLUMN provider text;
ALTER TABLE jobs ADD COLUMN resubmit_unknown boolean NOT NULL DEFAULT false;

-- Placement asks whether jobs wait for a provider its random window of
-- accounts missed; this keeps that question an index probe.
CREATE INDEX jobs_provider_queued_idx ON jobs (tenant_id, mode, provider)
    WHERE state = 'queued' AND pinned_email IS NULL AND provider IS NOT NULL;

-- A tenant's default for jobs that do not say resubmitUnknown (the
-- scheduler owns this column: it is a job default).
ALTER TABLE tenants ADD COLUMN resubmit_unknown boolean NOT NULL DEFAULT false;
