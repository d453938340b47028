// Whether a kernel can answer requests. In an exported report (no kernel) the report's
// loader sets window.__cncReport; a control that needs the kernel (an attack to run, rows to
// fetch) then says so instead of waiting for an answer that never comes.

export function hasKernel() {
  const report = globalThis.__cncReport;
  return !(report && report.kernel === false);
}

export const NEEDS_KERNEL = "This needs a running kernel: open the notebook and run it.";
