"""The records cronlink stores and passes around, below the store and the domain alike:
frozen, no behaviour beyond what reads them (`runs`: jobs' schedules, runs and the ledger;
`connections`, `automations`, `alerts`, `audit`, `api_tokens`)."""
