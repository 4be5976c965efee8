"""Alerts that reach people: budget thresholds, limiter saturation and upstream error rates sent
as webhooks (DingTalk, Feishu/Lark, WeCom, Slack, plain JSON), in the background, once each."""
