-- Counters for what the loop added: escalations, and toasts seen and center actions as engagement.
CREATE OR REPLACE VIEW notifyflow.kpi_minute AS
SELECT minute, channel, category, campaign_id, variant, platform,
       sumIf(events, status = 'requested') AS requested,
       sumIf(events, status = 'sent') AS sent,
       sumIf(events, status = 'delivered') AS delivered,
       sumIf(events, status = 'failed') AS failed,
       sumIf(events, status = 'retried') AS retried,
       sumIf(events, status = 'bounced') AS bounced,
       sumIf(events, status = 'token_invalid') AS token_invalid,
       sumIf(events, status = 'deduplicated') AS deduplicated,
       sumIf(events, status = 'merged') AS merged,
       sumIf(events, status = 'rate_limited') AS rate_limited,
       sumIf(events, status = 'deferred') AS deferred,
       sumIf(events, status = 'digested') AS digested,
       sumIf(events, status = 'dropped') AS dropped,
       sumIf(events, status = 'expired') AS expired,
       sumIf(events, status = 'escalated') AS escalated,
       sumIf(events, status = 'opened') AS opened,
       sumIf(events, status = 'clicked') AS clicked,
       sumIf(events, status = 'dismissed') AS dismissed,
       sumIf(events, status = 'unsubscribed') AS unsubscribed,
       sumIf(events, status = 'seen') AS seen,
       sumIf(events, status = 'read') AS read,
       sumIf(events, status = 'archived') AS archived,
       sumIf(events, status = 'deleted') AS deleted
FROM (SELECT toStartOfMinute(at) AS minute, channel, category, campaign_id, variant, platform, status, count() AS events
      FROM notifyflow.events_raw GROUP BY minute, channel, category, campaign_id, variant, platform, status)
GROUP BY minute, channel, category, campaign_id, variant, platform;
