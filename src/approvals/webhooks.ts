/**
 * Notifications of held commands: Slack-compatible JSON posted to each configured
 * webhook, retried with backoff, never awaited by the data path.
 */
export interface WebhookConfig {
  url: string;
}

export interface Notice {
  text: string;
  id: string;
  command: string;
  workload: string;
  target: string;
  link?: string;
}

const ATTEMPTS = 5;

export class Webhooks {
  constructor(
    private readonly hooks: WebhookConfig[],
    private readonly onFailure: (url: string, why: string) => void,
    private readonly baseDelayMs = 500,
  ) {}

  notify(n: Notice): void {
    for (const h of this.hooks) void this.send(h.url, n);
  }

  private async send(url: string, n: Notice): Promise<void> {
    const body = JSON.stringify({
      text: n.text,
      blocks: [
        { type: 'section', text: { type: 'mrkdwn', text: n.text } },
        { type: 'section', fields: [
          { type: 'mrkdwn', text: `*Workload*\n${n.workload}` },
          { type: 'mrkdwn', text: `*Target*\n${n.target}` },
          { type: 'mrkdwn', text: `*Request*\n${n.id}` },
        ] },
        { type: 'section', text: { type: 'mrkdwn', text: `\`\`\`${n.command.slice(0, 2500)}\`\`\`` } },
        ...(n.link ? [{ type: 'section', text: { type: 'mrkdwn', text: `<${n.link}|Review it>` } }] : []),
      ],
      interlock: { id: n.id, workload: n.workload, target: n.target, command: n.command, link: n.link },
    });
    let why = '';
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      try {
        const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal: AbortSignal.timeout(5000) });
        if (res.ok) return;
        why = `HTTP ${res.status}`;
        if (res.status < 500 && res.status !== 429) break; // the receiver refuses it: retrying will not help
      } catch (e) {
        why = (e as Error).message;
      }
      await new Promise((r) => setTimeout(r, this.baseDelayMs * 2 ** attempt).unref());
    }
    this.onFailure(url, why);
  }
}
