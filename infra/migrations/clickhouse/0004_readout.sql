-- The two-proportion z-test every readout shares (the A/B test, and the learning readouts against the
-- holdout): z of x2/n2 against x1/n1 with the pooled proportion, and its two-sided p-value. erfc keeps
-- p positive far out in the tail, where 1 - erf(|z|/sqrt(2)) is exactly 0 beyond |z| of about 8.3.
CREATE FUNCTION IF NOT EXISTS notifyflow_z AS (x1, n1, x2, n2) ->
    (x2 / n2 - x1 / n1) / sqrt(((x1 + x2) / (n1 + n2)) * (1 - (x1 + x2) / (n1 + n2)) * (1 / n1 + 1 / n2));

CREATE FUNCTION IF NOT EXISTS notifyflow_p AS (z) -> erfc(abs(z) / sqrt(2));

CREATE OR REPLACE VIEW notifyflow.ab_test AS
SELECT t.campaign_id AS campaign_id, c.control AS control, t.variant AS variant,
       c.control_reached AS control_reached, t.reached AS variant_reached,
       c.control_ctr AS control_ctr, t.ctr AS variant_ctr,
       notifyflow_z(c.control_clicked, c.control_reached, t.clicked, t.reached) AS ctr_z,
       notifyflow_p(ctr_z) AS ctr_p,
       c.control_conversion AS control_conversion, t.conversion AS variant_conversion,
       notifyflow_z(c.control_converted, c.control_reached, t.converted, t.reached) AS conversion_z,
       notifyflow_p(conversion_z) AS conversion_p,
       ctr_p < 0.05 AS ctr_significant
FROM notifyflow.campaign_variants AS t
INNER JOIN (SELECT campaign_id, min(variant) AS control, argMin(reached, variant) AS control_reached,
                   argMin(clicked, variant) AS control_clicked, argMin(converted, variant) AS control_converted,
                   argMin(ctr, variant) AS control_ctr, argMin(conversion, variant) AS control_conversion
            FROM notifyflow.campaign_variants WHERE reached > 0 GROUP BY campaign_id) AS c
    ON t.campaign_id = c.campaign_id
WHERE t.variant != c.control AND t.reached > 0;
