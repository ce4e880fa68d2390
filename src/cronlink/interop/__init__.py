"""Other schedulers' definitions in and out: Cloudflare cron triggers (wrangler),
Google Cloud Scheduler jobs and Kubernetes CronJobs."""
