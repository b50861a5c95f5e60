// The project's tests: its dependencies load and work.
const assert = require('assert');
const ms = require('ms');
const semver = require('semver');

assert.strictEqual(ms('2 days'), 172800000);
assert.strictEqual(ms(60000), '1m');
assert.ok(semver.satisfies('1.2.3', '^1.0.0'));
assert.strictEqual(semver.inc('1.2.3', 'minor'), '1.3.0');
console.log('tests passed: ms ' + require('ms/package.json').version + ', semver ' + require('semver/package.json').version);
