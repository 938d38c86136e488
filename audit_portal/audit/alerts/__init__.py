"""Detection rules and alerts: rules evaluated as events arrive, one alert per rule and group, notifications by
email and signed webhook (docs/alerts.md)."""
