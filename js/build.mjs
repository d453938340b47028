// Bundles each view into one self-contained ES module under src/cnc_widgets/static/.
// anywidget loads each view's module on its own, so no code splitting.
import * as esbuild from "esbuild";
import { readdirSync } from "node:fs";

const views = readdirSync("src/views").filter((f) => f.endsWith(".js"));
const options = {
  entryPoints: views.map((f) => `src/views/${f}`),
  outdir: "../src/cnc_widgets/static",
  bundle: true,
  format: "esm",
  target: "es2020",
  minify: !process.argv.includes("--watch"),
  legalComments: "eof",
  logLevel: "info",
};

if (process.argv.includes("--watch")) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
} else {
  await esbuild.build(options);
}
