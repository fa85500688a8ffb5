// Cloudflare's official TypeScript SDK (npm `cloudflare`) against aigw's management API, with
// only baseURL and apiToken changed: gateway create/get/list/update/delete, three chat requests
// (the third over a limit of 2 a minute), logs list/filter/get/edit/request/delete.
// Usage: node cloudflare_sdk.mjs BASE_URL(…/client/v4) TOKEN ACCOUNT DATA_PLANE_PREFIX(…/v1/ACCOUNT)
// Prints one JSON line; exits 1 with `FAIL: …` on stderr on any mismatch.
import Cloudflare from 'cloudflare';

const [baseURL, apiToken, account, prefix] = process.argv.slice(2);
const GW = 'tutorial-ts';
const summary = { ok: false, step: null };
const cf = new Cloudflare({ apiToken, baseURL, maxRetries: 0, timeout: 15000 });
const check = (cond, msg) => { if (!cond) throw new Error(msg); };

async function chat(n) {
  const r = await fetch(`${prefix}/${GW}/openai/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer sk-test' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `ts ${n}` }] }),
    signal: AbortSignal.timeout(15000),
  });
  await r.text();
  return r.status;
}

async function main() {
  summary.step = 'bad token';
  const bad = new Cloudflare({ apiToken: 'wrong', baseURL, maxRetries: 0 });
  try {
    await bad.aiGateway.list({ account_id: account });
    throw new Error('a wrong token was accepted');
  } catch (e) {
    check(e instanceof Cloudflare.AuthenticationError, `wrong token: ${e}`);
  }

  summary.step = 'create';
  const created = await cf.aiGateway.create({
    account_id: account, id: GW, cache_invalidate_on_update: false, cache_ttl: 300,
    collect_logs: true, rate_limiting_interval: 60, rate_limiting_limit: 20,
    rate_limiting_technique: 'fixed',
  });
  check(created.id === GW && created.cache_ttl === 300, `create: ${JSON.stringify(created)}`);

  summary.step = 'get and list';
  const got = await cf.aiGateway.get(GW, { account_id: account });
  check(got.rate_limiting_limit === 20, `get: ${JSON.stringify(got)}`);
  const seen = [];
  for await (const g of cf.aiGateway.list({ account_id: account, per_page: 1 })) {
    check(seen.length < 200, 'list auto-pagination did not end');
    seen.push(g.id);
  }
  check(seen.filter((id) => id === GW).length === 1, `paged list: ${seen}`);

  summary.step = 'update';
  const updated = await cf.aiGateway.update(GW, {
    account_id: account, cache_invalidate_on_update: false, cache_ttl: 60, collect_logs: true,
    rate_limiting_interval: 60, rate_limiting_limit: 2, rate_limiting_technique: 'fixed',
  });
  check(updated.rate_limiting_limit === 2, `update: ${JSON.stringify(updated)}`);

  summary.step = 'data plane';
  summary.chat_statuses = [await chat(1), await chat(2), await chat(3)];
  check(JSON.stringify(summary.chat_statuses) === '[200,200,429]', `chats: ${summary.chat_statuses}`);

  summary.step = 'logs';
  let logs = [];
  for (let i = 0; i < 50 && logs.length < 3; i++) {
    logs = (await cf.aiGateway.logs.list(GW, { account_id: account, per_page: 50 })).result;
    if (logs.length < 3) await new Promise((r) => setTimeout(r, 100));
  }
  check(logs.length === 3, `logs: ${logs.length}`);
  const failed = (await cf.aiGateway.logs.list(GW, {
    account_id: account, filters: [{ key: 'success', operator: 'eq', value: [false] }],
  })).result;
  check(failed.length === 1 && failed[0].success === false, `filter success eq false: ${JSON.stringify(failed)}`);
  const ok = logs.find((l) => l.success);
  const one = await cf.aiGateway.logs.get(ok.id, { account_id: account, gateway_id: GW });
  check(one.id === ok.id && one.model === 'gpt-4o-mini', `logs.get: ${JSON.stringify(one)}`);
  await cf.aiGateway.logs.edit(ok.id, { account_id: account, gateway_id: GW, feedback: 1 });
  const liked = (await cf.aiGateway.logs.list(GW, { account_id: account, feedback: 1 })).result;
  check(liked.length === 1 && liked[0].id === ok.id, `feedback filter: ${JSON.stringify(liked)}`);
  const body = await cf.aiGateway.logs.request(ok.id, { account_id: account, gateway_id: GW });
  check(JSON.stringify(body).includes('gpt-4o-mini'), `logs.request: ${JSON.stringify(body)}`);
  const deleted = await cf.aiGateway.logs.delete(GW, {
    account_id: account, filters: [{ key: 'success', operator: 'eq', value: [false] }],
  });
  check(deleted.success === true, `logs.delete: ${JSON.stringify(deleted)}`);
  const left = (await cf.aiGateway.logs.list(GW, { account_id: account })).result;
  check(left.length === 2, `after logs.delete: ${left.length}`);

  summary.step = 'delete';
  const gone = await cf.aiGateway.delete(GW, { account_id: account });
  check(gone.id === GW, `delete: ${JSON.stringify(gone)}`);
  try {
    await cf.aiGateway.get(GW, { account_id: account });
    throw new Error('the deleted gateway is still there');
  } catch (e) {
    check(e instanceof Cloudflare.NotFoundError, `get after delete: ${e}`);
  }
  summary.step = 'done';
  summary.ok = true;
}

try {
  await main();
} catch (e) {
  summary.error = String(e);
}
console.log(JSON.stringify(summary));
if (!summary.ok) {
  console.error(`FAIL at ${summary.step}: ${summary.error}`);
  process.exit(1);
}
