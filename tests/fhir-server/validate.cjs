// Independent check of FHIR resources with FHIR.js (npm `fhir` 4.12.0, base R4 with
// required value sets). Usage: node validate.cjs FILE.json...  Prints "ok FILE" or
// "INVALID FILE" with each message; exits 1 if any is invalid.
'use strict';
const fs = require('fs');
const { Fhir } = require('fhir');

const fhir = new Fhir();
let bad = 0;
for (const file of process.argv.slice(2)) {
  const r = fhir.validate(JSON.parse(fs.readFileSync(file, 'utf8')), { errorOnUnexpected: true });
  const errors = (r.messages || []).filter((m) => m.severity === 'error' || m.severity === 'fatal');
  if (errors.length === 0) {
    console.log(`ok ${file}`);
  } else {
    bad++;
    console.log(`INVALID ${file}`);
    for (const m of errors) console.log(`   ${m.location}: ${m.message}`);
  }
}
process.exit(bad ? 1 : 0);
