-- Where each tenant wants its webhooks, and the Standard Webhooks secret ("whsec_...") to sign them.
CREATE TABLE webhook_endpoints (
    tenant      text        PRIMARY KEY,
    url         text        NOT NULL,
    secret      text        NOT NULL,
    active      boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);
