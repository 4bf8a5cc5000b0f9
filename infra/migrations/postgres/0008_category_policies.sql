-- A tenant's changes to a category's delivery policy (merge, caps, excess, digestible, escalation),
-- as the fields it sets; every other field keeps the built-in default of kernel/policy.py.
CREATE TABLE category_policies (
    tenant     text        NOT NULL,
    category   text        NOT NULL,
    settings   jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, category)
);
