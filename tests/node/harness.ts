
// ---- harness (appended after the unchanged client by tests/ts_client.rs) ----
declare const process: any;
declare function require(name: string): any;
(globalThis as any).WebSocket = require('ws');

async function harness() {
  const client = new RealtimeProtocolClient(process.env.COMMS_URL, process.env.COMMS_TOKEN);
  let received: (data: any) => void = () => {};
  const delivered = new Promise<any>((resolve) => { received = resolve; });
  client.on('Broadcast', (data) => received(data));
  await client.connect();
  const sub = await client.subscribe(['chat.general', 'notifications']);
  if (sub.error) throw new Error('subscribe: ' + JSON.stringify(sub));
  const ack = await client.broadcast('chat.general', { message: 'Hello from TypeScript client!' });
  if (ack.status !== 'delivered' || ack.recipients !== 1) throw new Error('broadcast: ' + JSON.stringify(ack));
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('no delivery')), 10000));
  const data: any = await Promise.race([delivered, timeout]);
  if (data.payload.message !== 'Hello from TypeScript client!') throw new Error('payload: ' + JSON.stringify(data));
  console.log('TS_CLIENT_OK ' + JSON.stringify({ sub, ack, topic: data.topic }));
  client.disconnect();
}

harness().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
