// Sends a few events through the real @segment/analytics-node to the sidecar's Segment HTTP API.
// Usage: node script.js http://127.0.0.1:PORT WRITE_KEY RUN_ID
// Prints one JSON line per HTTP response the SDK got, and exits non-zero if the SDK reported an error.
'use strict'
const { Analytics } = require('@segment/analytics-node')

async function main() {
  const [host, writeKey, run] = process.argv.slice(2)
  const analytics = new Analytics({ writeKey, host, flushInterval: 50, maxRetries: 2 })
  const errors = []
  analytics.on('error', (error) => errors.push(String(error && (error.reason || error.message || error.code))))
  analytics.on('http_response', (response) => {
    console.log(JSON.stringify({ status: response.status, url: response.url }))
  })
  const userId = `node-${run}`
  analytics.identify({ userId, traits: { email: `${userId}@example.com`, name: 'Node User' } })
  analytics.track({ userId, event: 'Node Order', properties: { revenue: 12.5, currency: 'USD', sku: 'N-1' } })
  analytics.group({ userId, groupId: `company-${run}`, traits: { name: 'Node Co' } })
  await analytics.closeAndFlush({ timeout: 20000 })
  if (errors.length) {
    console.error(JSON.stringify({ errors }))
    process.exit(1)
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(2)
})
