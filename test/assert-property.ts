import fc from 'fast-check';

/**
 * fc.assert, with the failing assertion's own message in the error (fast-check keeps it
 * as `cause`, which the test reporter does not print).
 */
export async function assertProperty<Ts>(property: fc.IAsyncProperty<Ts> | fc.IProperty<Ts>, params: fc.Parameters<Ts>): Promise<void> {
  try {
    await fc.assert(property, params);
  } catch (error) {
    const cause = error instanceof Error && error.cause instanceof Error ? error.cause.message : '';
    throw new Error(`${error instanceof Error ? error.message.split('\n').slice(0, 3).join('\n') : String(error)}\ncause: ${cause}`);
  }
}
