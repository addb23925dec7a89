// Validates DTDL files with Microsoft's parser (npm @azure/dtdl-parser), as an independent
// check of `fieldgate model`. Usage: node dtdl-validate.js FILE...
// Prints one JSON line per file ({"file", "ok", "elements"} or {"file", "ok": false, "error"})
// and exits non-zero when any is invalid.
'use strict';
const fs = require('fs');
const { createParser, ModelParsingOption } = require('@azure/dtdl-parser');

async function main() {
  let bad = 0;
  for (const file of process.argv.slice(2)) {
    const parser = createParser(ModelParsingOption.PermitAnyTopLevelElement);
    try {
      const model = await parser.parse([fs.readFileSync(file, 'utf8')]);
      console.log(JSON.stringify({ file, ok: true, elements: Object.keys(model).length }));
    } catch (e) {
      bad += 1;
      const detail = e && e._parsingErrors ? e._parsingErrors.map((p) => JSON.stringify(p)) : String(e);
      console.log(JSON.stringify({ file, ok: false, error: detail }));
    }
  }
  process.exit(bad ? 1 : 0);
}
main();
