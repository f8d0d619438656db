// Sends one of each Segment call with the official @segment/analytics-node SDK and
// prints every HTTP request body it sends (one JSON line each) so the test can check
// that every field reached the events table.
import { Analytics } from '@segment/analytics-node'

const analytics = new Analytics({
  writeKey: process.env.WRITE_KEY,
  host: process.env.COLLECTOR_URL,
  maxEventsInBatch: 3,
  flushInterval: 200,
})
analytics.on('http_request', (request) => process.stdout.write(request.body + '\n'))
analytics.on('error', (error) => process.stderr.write(`error: ${JSON.stringify(error)}\n`))

const context = { ip: '10.0.0.8', locale: 'zh-CN', campaign: { source: 'wechat', name: '双11' } }
const integrations = { All: true, Mixpanel: false }
analytics.identify({ messageId: 'node-identify', userId: 'n-user', traits: { phone: '+8613800138000', vip: true, tags: ['a'] }, context, integrations })
analytics.track({ messageId: 'node-track', userId: 'n-user', event: 'Order Completed', properties: { order_id: 'o-9', revenue: 199.5, items: [{ sku: 'S1', qty: 2 }] }, timestamp: new Date('2024-05-01T08:00:00Z'), context, integrations })
analytics.page({ messageId: 'node-page', anonymousId: 'n-anon', category: '商品', name: '详情页', properties: { url: 'https://shop.example/p/1' }, context })
analytics.screen({ messageId: 'node-screen', userId: 'n-user', name: 'Home', properties: { tab: 'new' } })
analytics.group({ messageId: 'node-group', userId: 'n-user', groupId: 'g-1', traits: { name: 'Store 7' } })
analytics.alias({ messageId: 'node-alias', previousId: 'n-anon', userId: 'n-user' })
await analytics.closeAndFlush({ timeout: 20000 })
