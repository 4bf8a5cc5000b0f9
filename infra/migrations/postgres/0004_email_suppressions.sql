-- Addresses email must not be sent to again: a hard bounce (550 user unknown) said they do not exist.
-- Keyed by the lower-cased address, as the email sink normalises it before looking it up.
CREATE TABLE email_suppressions (
    address       text        PRIMARY KEY,
    reason        text        NOT NULL,
    suppressed_at timestamptz NOT NULL DEFAULT now()
);
