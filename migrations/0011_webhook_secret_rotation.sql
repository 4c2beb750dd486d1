-- A tenant's webhook signing secret can be rotated: the replaced secret
-- keeps signing (next to the new one) until webhook_secret_previous_until,
-- so receivers can switch without dropping a delivery. Sealed like
-- webhook_secret, bound to the tenant row.
ALTER TABLE tenants
    ADD COLUMN webhook_secret_previous bytea,
    ADD COLUMN webhook_secret_previous_until timestamptz;
