// fhirpath.js (the HL7 reference JavaScript implementation) evaluating the expressions of
// clw-gateway's mappings on the same input. Driven by benches/mapping.rs, which passes a
// spec file: {input, iterations, expressions: [{mapping, to, expr, constants}]}.
// Prints one JSON line: {referrals_per_s, results} (results for the cross-check).
'use strict';
const fs = require('fs');
const fhirpath = require('fhirpath');

const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const compiled = spec.expressions.map((e) => ({
  fn: fhirpath.compile(e.expr),
  env: e.constants,
}));
const evalAll = () => compiled.map((c) => c.fn(spec.input, c.env));

const results = evalAll();
for (let i = 0; i < Math.min(spec.iterations, 1000); i++) evalAll(); // warm-up (JIT)
const start = process.hrtime.bigint();
for (let i = 0; i < spec.iterations; i++) evalAll();
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
process.stdout.write(
  JSON.stringify({ referrals_per_s: spec.iterations / seconds, seconds, results }) + '\n',
);
