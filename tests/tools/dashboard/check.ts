// Uses the generated types as a dashboard would; `tsc --noEmit --strict` must accept it. The
// expected errors fail the check if the types were too loose (e.g. `any`).
import type { ActionKind, DashboardQuery, DashboardQueryVariables } from './graphql';

export const variables: DashboardQueryVariables = { first: 20, partners: ['caravan'] };

export function rows(data: DashboardQuery): Array<[string, ActionKind, string | null | undefined]> {
  return data.actions.nodes.map((a) => [a.title, a.kind, a.startsOn]);
}

export function owners(data: DashboardQuery): string[] {
  return data.actions.nodes.map((a) => a.owner.slug);
}

export function scopes(data: DashboardQuery): string[] {
  return data.viewer.scopes;
}

// @ts-expect-error `summary` is not in the Dashboard query
export const summaries = (data: DashboardQuery) => data.actions.nodes.map((a) => a.summary);

// @ts-expect-error `first` is required
export const missing: DashboardQueryVariables = {};
