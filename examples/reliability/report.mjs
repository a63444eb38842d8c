// placeholder, replaced below
import { readFileSync, writeFileSync } from 'node:fs';
const r = JSON.parse(readFileSync(process.argv[2], 'utf8'));
writeFileSync(process.argv[3], '# Reliability\n\n```json\n' + JSON.stringify(r, null, 1).slice(0, 5000) + '\n```\n');
