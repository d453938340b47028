// Bundles each view into one self-contained ES module under src/cnc_widgets/static/.
// anywidget loads each view's module on its own, so no code splitting.
// Also puts beside them what an exported report inlines so that it renders with no network:
// require.js, the widget manager of @jupyter-widgets/html-manager (its prebuilt AMD bundle)
// and the report's loader (src/report/loader.js, a classic script).
import * as esbuild from "esbuild";
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";

const outdir = "../src/cnc_widgets/static";
const minify = !process.argv.includes("--watch");
const views = readdirSync("src/views").filter((f) => f.endsWith(".js"));
const options = {
  entryPoints: views.map((f) => `src/views/${f}`),
  outdir,
  bundle: true,
  format: "esm",
  target: "es2020",
  minify,
  legalComments: "eof",
  logLevel: "info",
};
const loader = {
  entryPoints: ["src/report/loader.js"],
  outfile: `${outdir}/report-loader.js`,
  bundle: true,
  format: "iife",
  target: "es2020",
  minify,
  logLevel: "info",
};

// libembed-amd.js defines the manager's AMD modules without rendering anything itself (the
// loader does); source map comments go, a report must not point at files it lacks.
mkdirSync(outdir, { recursive: true });
function copyScript(from, to) {
  const text = readFileSync(from, "utf8").replace(/^\/\/# sourceMappingURL=.*$/gm, "");
  writeFileSync(`${outdir}/${to}`, text);
}
copyScript("node_modules/requirejs/require.js", "report-require.js");
copyScript("node_modules/@jupyter-widgets/html-manager/dist/libembed-amd.js", "report-html-manager.js");

if (process.argv.includes("--watch")) {
  for (const o of [options, loader]) await (await esbuild.context(o)).watch();
} else {
  await esbuild.build(options);
  await esbuild.build(loader);
}
