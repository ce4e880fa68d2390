// Written by `cronlink export wrangler`: Cloudflare cron triggers call cronlink.
// The secret comes from Cloudflare's secret store: wrangler secret put CRON_SECRET
export default {
  async scheduled(controller, env) {
    // Packed (no CRONLINK_JOBS), every minute asks cronlink to fire whatever is due.
    const jobs = env.CRONLINK_JOBS ? env.CRONLINK_JOBS[controller.cron] ?? [] : null;
    const paths =
      jobs === null ? ["/cron/tick"] : jobs.map((job) => `/cron/${encodeURIComponent(job)}`);
    const headers = {
      Authorization: `Bearer ${env.CRON_SECRET}`,
      // The same instant twice (a retried invocation) queues one run.
      "X-Cronlink-Scheduled-Time": new Date(controller.scheduledTime).toISOString(),
    };
    const answers = await Promise.all(
      paths.map((path) => fetch(env.APP_URL + path, { method: "POST", headers })),
    );
    const failed = answers.filter((answer) => !answer.ok).map((answer) => answer.status);
    if (failed.length) throw new Error(`cronlink answered ${failed.join(", ")}`);
  },
};
