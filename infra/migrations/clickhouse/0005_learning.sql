-- What the notification flow learns from engagement, measured against its holdout. Statuses say which
-- cohort the user is in (treated, or holdout: the plain behaviour) and whether the notification asked
-- for the best send time (send_time = 'optimal', in both cohorts).
ALTER TABLE notifyflow.events_raw
    ADD COLUMN IF NOT EXISTS cohort LowCardinality(String) AFTER tenant,
    ADD COLUMN IF NOT EXISTS send_time LowCardinality(String) AFTER cohort;

-- One row per notification that went out to a user with a cohort (requested on a channel, or sent or
-- delivered): whether the user opened or clicked it, clicked it, unsubscribed from it. A notification's
-- rows share one pseudonym (the key of its creation time), so its engagement meets its statuses here.
CREATE VIEW IF NOT EXISTS notifyflow.learning_notifications AS
SELECT key_version, user_key, notification_id,
       anyIf(cohort, cohort != '') AS cohort,
       max(send_time = 'optimal') AS optimal,
       anyIf(category, kind = 'status') AS category,
       max(status IN ('opened', 'clicked')) AS opened,
       max(status = 'clicked') AS clicked,
       max(status = 'unsubscribed') AS unsubscribed
FROM notifyflow.events_raw
GROUP BY key_version, user_key, notification_id
HAVING cohort != '' AND max(kind = 'status' AND status IN ('requested', 'sent', 'delivered')) = 1;

-- Best send time: notifications that asked for it, treated (held to the learned hour) against the
-- holdout (sent at once); open, click and unsubscribe rates with the A/B readout's z-test.
CREATE VIEW IF NOT EXISTS notifyflow.sto_uplift AS
SELECT treated, holdout,
       treated_opened / nullIf(treated, 0) AS treated_open_rate, holdout_opened / nullIf(holdout, 0) AS holdout_open_rate,
       treated_open_rate / nullIf(holdout_open_rate, 0) AS open_uplift,
       notifyflow_z(holdout_opened, holdout, treated_opened, treated) AS open_z, notifyflow_p(open_z) AS open_p,
       treated_clicked / nullIf(treated, 0) AS treated_click_rate,
       holdout_clicked / nullIf(holdout, 0) AS holdout_click_rate,
       notifyflow_z(holdout_clicked, holdout, treated_clicked, treated) AS click_z, notifyflow_p(click_z) AS click_p,
       treated_unsubscribed / nullIf(treated, 0) AS treated_unsubscribe_rate,
       holdout_unsubscribed / nullIf(holdout, 0) AS holdout_unsubscribe_rate,
       notifyflow_z(holdout_unsubscribed, holdout, treated_unsubscribed, treated) AS unsubscribe_z,
       notifyflow_p(unsubscribe_z) AS unsubscribe_p,
       treated_opened, holdout_opened, treated_clicked, holdout_clicked, treated_unsubscribed, holdout_unsubscribed
FROM (SELECT countIf(cohort = 'treated') AS treated, countIf(cohort = 'holdout') AS holdout,
             countIf(cohort = 'treated' AND opened) AS treated_opened, countIf(cohort = 'holdout' AND opened) AS holdout_opened,
             countIf(cohort = 'treated' AND clicked) AS treated_clicked,
             countIf(cohort = 'holdout' AND clicked) AS holdout_clicked,
             countIf(cohort = 'treated' AND unsubscribed) AS treated_unsubscribed,
             countIf(cohort = 'holdout' AND unsubscribed) AS holdout_unsubscribed
      FROM notifyflow.learning_notifications WHERE optimal);

-- Fatigue, per category: how many notifications each user got and ignored (neither opened nor clicked),
-- treated against the holdout, and the ignored and unsubscribe rates with the same z-test. What fatigue
-- holds back goes out in digests (category 'digest'). Users are counted per key period.
CREATE VIEW IF NOT EXISTS notifyflow.fatigue_effect AS
SELECT category, treated_users, holdout_users, treated, holdout,
       treated / nullIf(treated_users, 0) AS treated_per_user, holdout / nullIf(holdout_users, 0) AS holdout_per_user,
       (treated - treated_opened) / nullIf(treated_users, 0) AS treated_ignored_per_user,
       (holdout - holdout_opened) / nullIf(holdout_users, 0) AS holdout_ignored_per_user,
       treated_opened / nullIf(treated_users, 0) AS treated_opens_per_user,
       holdout_opened / nullIf(holdout_users, 0) AS holdout_opens_per_user,
       1 - treated_opened / nullIf(treated, 0) AS treated_ignored_rate,
       1 - holdout_opened / nullIf(holdout, 0) AS holdout_ignored_rate,
       notifyflow_z(holdout - holdout_opened, holdout, treated - treated_opened, treated) AS ignored_z,
       notifyflow_p(ignored_z) AS ignored_p,
       treated_unsubscribed / nullIf(treated, 0) AS treated_unsubscribe_rate,
       holdout_unsubscribed / nullIf(holdout, 0) AS holdout_unsubscribe_rate,
       notifyflow_z(holdout_unsubscribed, holdout, treated_unsubscribed, treated) AS unsubscribe_z,
       notifyflow_p(unsubscribe_z) AS unsubscribe_p,
       treated_opened, holdout_opened, treated_unsubscribed, holdout_unsubscribed
FROM (SELECT category,
             uniqExactIf((key_version, user_key), cohort = 'treated') AS treated_users,
             uniqExactIf((key_version, user_key), cohort = 'holdout') AS holdout_users,
             countIf(cohort = 'treated') AS treated, countIf(cohort = 'holdout') AS holdout,
             countIf(cohort = 'treated' AND opened) AS treated_opened, countIf(cohort = 'holdout' AND opened) AS holdout_opened,
             countIf(cohort = 'treated' AND unsubscribed) AS treated_unsubscribed,
             countIf(cohort = 'holdout' AND unsubscribed) AS holdout_unsubscribed
      FROM notifyflow.learning_notifications GROUP BY category);

-- What dashboards show of them: counts noised below the threshold (notifyflow.privacy), rates from the
-- noised counts, p-values from the exact ones (noise would bias the test).
CREATE VIEW IF NOT EXISTS notifyflow.released_sto_uplift AS
SELECT treated, holdout, treated_opened / nullIf(treated, 0) AS treated_open_rate,
       holdout_opened / nullIf(holdout, 0) AS holdout_open_rate,
       treated_open_rate / nullIf(holdout_open_rate, 0) AS open_uplift, open_p, click_p, unsubscribe_p
FROM (SELECT notifyflow_dp(s.treated, p.epsilon, p.min_count, 1) AS treated,
             notifyflow_dp(s.holdout, p.epsilon, p.min_count, 3) AS holdout,
             notifyflow_dp(s.treated_opened, p.epsilon, p.min_count, 5) AS treated_opened,
             notifyflow_dp(s.holdout_opened, p.epsilon, p.min_count, 7) AS holdout_opened,
             s.open_p AS open_p, s.click_p AS click_p, s.unsubscribe_p AS unsubscribe_p
      FROM notifyflow.sto_uplift AS s
      CROSS JOIN (SELECT argMax(epsilon, set_at) AS epsilon, argMax(min_count, set_at) AS min_count
                  FROM notifyflow.privacy) AS p);

CREATE VIEW IF NOT EXISTS notifyflow.released_fatigue_effect AS
SELECT category, treated_users, holdout_users,
       treated / nullIf(treated_users, 0) AS treated_per_user, holdout / nullIf(holdout_users, 0) AS holdout_per_user,
       (treated - least(treated, treated_opened)) / nullIf(treated_users, 0) AS treated_ignored_per_user,
       (holdout - least(holdout, holdout_opened)) / nullIf(holdout_users, 0) AS holdout_ignored_per_user,
       treated_opened / nullIf(treated_users, 0) AS treated_opens_per_user,
       holdout_opened / nullIf(holdout_users, 0) AS holdout_opens_per_user, ignored_p, unsubscribe_p
FROM (SELECT f.category AS category,
             notifyflow_dp(f.treated_users, p.epsilon, p.min_count, 1) AS treated_users,
             notifyflow_dp(f.holdout_users, p.epsilon, p.min_count, 3) AS holdout_users,
             notifyflow_dp(f.treated, p.epsilon, p.min_count, 5) AS treated,
             notifyflow_dp(f.holdout, p.epsilon, p.min_count, 7) AS holdout,
             notifyflow_dp(f.treated_opened, p.epsilon, p.min_count, 9) AS treated_opened,
             notifyflow_dp(f.holdout_opened, p.epsilon, p.min_count, 11) AS holdout_opened,
             f.ignored_p AS ignored_p, f.unsubscribe_p AS unsubscribe_p
      FROM notifyflow.fatigue_effect AS f
      CROSS JOIN (SELECT argMax(epsilon, set_at) AS epsilon, argMax(min_count, set_at) AS min_count
                  FROM notifyflow.privacy) AS p);
