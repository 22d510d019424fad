export function installFastKernels(backendName: 'cpu'): string[] {
  void backendName;
  return [];
}
